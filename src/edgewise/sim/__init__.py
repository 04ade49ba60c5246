"""Virtual-clock simulators that drive the same policy objects as the live system."""
