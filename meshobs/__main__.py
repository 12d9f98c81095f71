from meshobs.cli import main

raise SystemExit(main())
