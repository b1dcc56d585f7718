"""
C{twistd logio}: the command-line options, the settings made of them, the
services, and the service tree built from them.
"""
