"""ownkernel.ui"""
