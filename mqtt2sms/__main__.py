from mqtt2sms import cli

raise SystemExit(cli.main())
