"""The device agent: staged rollout of model bundles over MQTT (control) and HTTP (artifacts).

- :mod:`.signed`: signed JSON envelopes (announcements and per-device files).
- :mod:`.device_file`: a device's own signed config file, fetched beside the group bundle.
- :mod:`.wave`: stable wave membership by a hash of the device id.
- :mod:`.download`: HTTP download with resume and a hash check.
- :mod:`.health`: health gate on the daemon's ``/healthz``.
- :mod:`.config`: ``agent.yaml``.
- :mod:`.core`: the install state machine; :mod:`.mqtt_link`: the MQTT side.
"""
