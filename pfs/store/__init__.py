"""The store: opening and recovering a store, putting, getting, checking and volume administration."""
