"""The auditor's surface: the read-only, access-logged query API, its web console and the chain verifier."""
