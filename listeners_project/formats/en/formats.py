"""Times in the admin to the second and with their zone (a session's TTL is 90 s: minutes and no zone were useless).
Installed by FORMAT_MODULE_PATH in settings; a locale's format would otherwise win over DATETIME_FORMAT."""
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
TIME_FORMAT = "H:i:s T"
