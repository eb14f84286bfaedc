"""The hostile and faulty cases: what a careless user, an attacker or a broken environment does to the service.

Each test here reproduces one failure found by probing (a Redis full of other keys, a worker killed near its budget,
hostile files, a killed upload, ...) and pins its fix. The suite grows with every feature.
"""
