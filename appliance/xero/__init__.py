"""xero"""
