DROP TABLE erasure_subjects;
DROP TABLE erasures;
DROP TABLE version_checks_monthly;
