"""Package data: named fleets for `flox-isa devcluster up --fleet NAME`."""
