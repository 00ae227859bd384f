"""The provledger contract: what two processes or an independent verifier must agree on.

Submodules: `merkle` (RFC 9162), `note` (C2SP signed notes and checkpoints), `events`
(the event envelope, validation, RFC 8785 leaf bytes), `blocks` (signed block headers),
`errors` (the exception tree), `v1` (generated gRPC code).
"""
