DROP TABLE operations;
DROP TABLE collection_permissions;
DROP TABLE collections;
DROP TABLE api_keys;
DROP TABLE users;
