"""The Dagster code location of the 专家服务基层 year-end materials pipeline."""
