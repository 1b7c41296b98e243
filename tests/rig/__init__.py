"""The test rig: real nats-server, fake services, gateways and clients."""
