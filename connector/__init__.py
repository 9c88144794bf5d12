"""Zoho CRM to Parquet connector: Bulk Read, COQL and the Records API into typed, incremental datasets."""

__version__ = "0.1.0"
