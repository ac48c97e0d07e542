from bench.gateway.run import main

raise SystemExit(main())
