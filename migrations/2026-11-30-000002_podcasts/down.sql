DROP TABLE podcasts;
