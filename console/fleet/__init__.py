"""Fleet rollout support on the console side: drift between agents of one fleet."""
