"""A provledger node: LevelDB storage, the sequencer, the coordinator and the gRPC service."""
