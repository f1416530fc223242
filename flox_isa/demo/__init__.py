"""`flox-isa demo`: the whole product at work on a local simulated fleet."""
