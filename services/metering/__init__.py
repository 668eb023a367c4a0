"""MeteringService: usage events, aggregation, price plans and monthly invoices."""
