DROP TABLE IF EXISTS interleaved_thinking;
