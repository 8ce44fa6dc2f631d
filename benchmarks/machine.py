"""What every benchmark table states about the machine it ran on."""

import platform


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'
