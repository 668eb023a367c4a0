-- The metering store's database beside the tenant store's (POSTGRES_DB creates makoto_tenant).
CREATE DATABASE makoto_metering OWNER makoto;
