import PropellerCLI

await PropellerCommand.entry()
