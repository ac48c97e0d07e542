-- One database per service (DESIGN.md): created once when the PostgreSQL volume is new.
CREATE DATABASE onenet_gateway;
CREATE DATABASE onenet_services;
CREATE DATABASE onenet_residents;
CREATE DATABASE onenet_matching;
CREATE DATABASE onenet_metrics;
