import PropellerCLI

PropellerCommand.entry()
