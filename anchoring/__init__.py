"""Publishers of checkpoints to outside places: Git, RFC 3161 time-stamp authorities, witnesses."""
