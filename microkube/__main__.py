from microkube.cli import main

raise SystemExit(main())
