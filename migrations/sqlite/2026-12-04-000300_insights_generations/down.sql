DROP TABLE insights_generations;
