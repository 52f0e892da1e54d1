"""Client protocols, sans-IO: the RESP request parser, reply encoder and the
Redis command table. Nothing here touches a socket (like h11)."""
