"""Fakes of outside services for tests, written from their published APIs."""
