import PropellerRunCLI

RunEntry.main()
