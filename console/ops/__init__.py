"""Operations endpoints: liveness, readiness, the console's own metrics."""
