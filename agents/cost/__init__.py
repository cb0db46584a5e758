"""The cost agent (idle, right-size, spot, commitments) and its allocation program."""
