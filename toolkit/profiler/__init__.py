"""The profiler core: runs an artifact through a device's collector and reports one schema.

It knows no device: collectors (in each backend) time generation, count launches and break down
ops; the core adds warm-up, repetition, statistics, memory high-water marks, roofline and sweeps.
"""
