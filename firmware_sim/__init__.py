"""Simulated device firmware: ``firmware_sim.sensor`` streams framed sensor data to the daemon."""
