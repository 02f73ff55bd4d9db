DROP TABLE version_status;
DROP TABLE hosts;
DROP TABLE version_checks;
