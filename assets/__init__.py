"""Pipeline stages: one module per stage, a plain function doing the work and a thin Dagster asset."""
