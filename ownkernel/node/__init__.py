"""ownkernel.node"""
