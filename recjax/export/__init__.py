"""Serving bundles: everything a serving process needs, with no training code and no pickle."""
