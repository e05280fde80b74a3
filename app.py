"""locmnist: find and read a handwritten digit. Run with ``streamlit run app.py``.

A thin entry point: each page's logic lives in ``app_pages/`` as a function. The folder
is not called ``pages/``: Streamlit would also serve every file there as a page of its own,
and a fresh server opened at /train would show that blank script instead.
"""
import streamlit as st

import ui
from app_pages import evaluate, history, predict, train

st.set_page_config(page_title="locmnist", page_icon="🔢", layout="wide")
ui.warm_default_model()  # whatever page a visitor opens first, the model starts loading
ui.admin_login()         # public servers: logs, paths and anyone's runs need the admin token
page = st.navigation([
    st.Page(predict.render, title="Predict", icon=":material/draw:", url_path="predict",
            default=True),
    st.Page(train.render, title="Train", icon=":material/model_training:", url_path="train"),
    st.Page(history.render, title="History", icon=":material/show_chart:", url_path="history"),
    st.Page(evaluate.render, title="Evaluate", icon=":material/fact_check:",
            url_path="evaluate"),
])
page.run()
