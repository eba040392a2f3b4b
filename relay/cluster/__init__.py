"""Several relay replicas as one service: who is alive, who holds which agent, forwarded calls.

Redis is the shared view (`relay.cluster.presence`), pub/sub carries calls between replicas
(`relay.cluster.bus`); a relay without ``redis_url`` is a cluster of one (`SoloMembership`).
"""
