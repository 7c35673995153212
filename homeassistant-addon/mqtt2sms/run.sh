#!/bin/sh
# The add-on's start: /data/options.json and the Supervisor's MQTT service become the config
# (errors name the option), then the daemon replaces this shell (SIGTERM reaches it).
set -e
mqtt2sms addon-config --options /data/options.json --output /tmp/mqtt2sms/config.yaml
exec mqtt2sms run -c /tmp/mqtt2sms/config.yaml
