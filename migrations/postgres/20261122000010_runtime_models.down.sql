DROP TABLE IF EXISTS yallmp_runtime_models;
