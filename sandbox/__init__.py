"""A local server that behaves like Xero's Identity and Accounting APIs, for tests and the demo."""
