from locmnist.cli import main

raise SystemExit(main())
