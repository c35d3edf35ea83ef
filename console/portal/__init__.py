"""The customer portal (dashboard, playground, voices, keys, plan, invoices, team) and the staff overview."""
