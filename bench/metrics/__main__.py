from bench.metrics.run import main

main()
