"""Running collection-audit: settings, the embedded one-machine stack, topics, migrations, the CLI."""
