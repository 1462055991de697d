"""streamqc failover: policy, command/ack protocol and the encoder-side agent."""
