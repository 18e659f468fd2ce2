"""Exit codes of the ``canary`` command: part of its interface, since CI branches on them."""

EXIT_OK = 0  # success: the rollout succeeded, the command was applied, the spec is valid
EXIT_OUTCOME = 1  # not as asked: rolled back, failed, refused in its phase, --expect not met
EXIT_USAGE = 2  # bad usage, an invalid spec or setting, an unknown rollout id
EXIT_TIMEOUT = 3  # `rollout start --wait --timeout` ran out (the rollout goes on)
EXIT_UNREACHABLE = 4  # the daemon (or a backend) could not be reached, or refused the token
