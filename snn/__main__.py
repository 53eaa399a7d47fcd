from snn.cli import main

raise SystemExit(main())
