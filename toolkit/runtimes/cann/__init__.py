"""msprof, CANN's profiler: its op_summary CSV read into the common profile schema."""
